"""One LightningModule per method: `finetune` (supervised, trains teachers), `hinton` (soft-target KD)."""
