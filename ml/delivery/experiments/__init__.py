"""Online experiments on served model versions: A/B tests decided by a significance test, and
Thompson-sampling bandits that move traffic towards the variant with the best observed reward."""
