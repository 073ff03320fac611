"""Phase 2 and 3 data: Rosie's personality dialogues, emotion-labelled dialogues, memory dialogues."""
