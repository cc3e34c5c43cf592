from cifar_moe.deploy.export import main

main()
