"""Model delivery: traffic splitting between served versions, outcome feedback, and the controllers
(rollouts, A/B tests, bandits) that act on them."""
