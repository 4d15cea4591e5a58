from pan_cli.cli import main

main()
