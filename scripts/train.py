"""Same as ``sr-adapt-train``: see :mod:`sr_adapt.tasks.train`."""

from sr_adapt.tasks.train import main

if __name__ == "__main__":
    main()
