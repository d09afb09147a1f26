"""python -m hardsamples.bench [key=value ...]: see hardsamples.bench.speed."""

from hardsamples.bench.speed import main

if __name__ == "__main__":
    main()
