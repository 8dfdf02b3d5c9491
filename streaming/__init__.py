"""Real-time plumbing: chunk scheduling with lookahead, the Streamer, resampling."""
