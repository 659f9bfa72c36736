"""Learning to actively learn: adaptive query policies trained adversarially over problem classes."""
