"""python -m hardsamples.bench [key=value ...] (--help lists the options): see hardsamples.bench.speed."""

from hardsamples.bench.speed import main

if __name__ == "__main__":
    raise SystemExit(main())
