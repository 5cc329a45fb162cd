from hardmine.cli import main

main()
