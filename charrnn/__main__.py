"""`python -m charrnn` runs the command-line tool."""

from charrnn.cli.app import main

if __name__ == "__main__":
    main()
