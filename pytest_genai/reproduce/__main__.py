import sys

from pytest_genai.reproduce.cli import main

sys.exit(main())
