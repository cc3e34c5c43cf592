import sys

from cifar_moe.cli.sweep import main

sys.exit(main())
