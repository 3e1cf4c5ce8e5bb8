from diffbio_prob.cli import console_main

console_main()
