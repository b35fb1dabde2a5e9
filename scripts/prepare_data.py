"""Same as ``sr-adapt-prepare-data``: see :mod:`sr_adapt.tasks.prepare_data`."""

from sr_adapt.tasks.prepare_data import console_main

if __name__ == "__main__":
    console_main()
