from kade.cli import main

main()
