"""quorumlog client SDK and command-line tool."""
