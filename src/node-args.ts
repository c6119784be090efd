// node's own arguments as the operator gave them, for the V8 flags berth sets at run time
// (src/lean-start.ts, src/memory.ts): a flag the operator gave is theirs, and berth leaves it alone.

/** NODE_OPTIONS, then node's command line (read last: it wins where both set a flag). */
export function nodeArgs (execArgv: readonly string[] = process.execArgv, nodeOptions = process.env.NODE_OPTIONS ?? ''): string[] {
  return [...nodeOptions.split(/\s+/).filter(Boolean), ...execArgv]
}

/** Whether any of `args` is a flag of the family `given` matches (`--x`, `--no-x`, `--x=…`). */
export const gave = (args: readonly string[], given: RegExp): boolean => args.some((a) => given.test(a))
