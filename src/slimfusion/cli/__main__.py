from slimfusion.cli import main

main()
