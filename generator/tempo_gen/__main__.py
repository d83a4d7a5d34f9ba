from tempo_gen.cli import main

main()
