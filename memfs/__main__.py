import sys

if __name__ == "__main__":  # not when multiprocessing's spawn imports it in a worker,
    from .cli import main  # which then loads none of the CLI (~0.07 s per worker start)

    sys.exit(main())
