"""Same as ``sr-adapt-export``: see :mod:`sr_adapt.tasks.export`."""

from sr_adapt.tasks.export import main

if __name__ == "__main__":
    main()
