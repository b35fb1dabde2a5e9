"""Same as ``sr-adapt-evaluate``: see :mod:`sr_adapt.tasks.evaluate`."""

from sr_adapt.tasks.evaluate import main

if __name__ == "__main__":
    main()
