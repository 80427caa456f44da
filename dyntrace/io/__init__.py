"""The run file: its format (one owner), the background writer and the reader."""
