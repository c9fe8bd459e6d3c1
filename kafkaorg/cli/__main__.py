from kafkaorg.cli import main

main()
