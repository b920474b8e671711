"""The fault-injection suite (issue 24): a catalogue of bad inputs and faults, each with the outcome it must have."""
