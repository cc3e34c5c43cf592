"""The bottom layer: constants, errors, atomic files and device facts. Imports no other layer."""
