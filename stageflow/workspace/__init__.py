"""What a subagent may touch: the workspace root and its path confinement, the file tools,
search in a killable child, the allow-listed shell, child process groups, a git worktree per
run, and the workspace view status shows."""
