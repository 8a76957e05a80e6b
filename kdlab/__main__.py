from kdlab.train import main

main()
