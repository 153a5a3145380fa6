"""Pure webhook rules: destination safety, signing, retry policy, event routing. No I/O."""
