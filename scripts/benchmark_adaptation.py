"""Same as ``sr-adapt-benchmark-adaptation``: see :mod:`sr_adapt.tasks.benchmark_adaptation`."""

from sr_adapt.tasks.benchmark_adaptation import main

if __name__ == "__main__":
    main()
