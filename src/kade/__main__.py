from kade.cli.main import main

main()
