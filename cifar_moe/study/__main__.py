import sys

from cifar_moe.cli.study import main

sys.exit(main())
