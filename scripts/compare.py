"""Same as ``sr-adapt-compare``: see :mod:`sr_adapt.tasks.compare`."""

from sr_adapt.tasks.compare import main

if __name__ == "__main__":
    main()
