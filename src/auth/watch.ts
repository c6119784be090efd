// Polling a file that berth reads (htpasswd, access keys): a change, a rename by an editor or
// `htpasswd`, or the file appearing, runs `reload` (one at a time). Polling, not fs.watch: it sees a file
// replaced by rename and works on every file system (NFS, a Kubernetes Secret's symlinks).
import { watchFile, unwatchFile, type Stats } from 'node:fs'

/** Starts polling; returns the function that stops it. */
export function watchPath (file: string, reload: () => Promise<void>, interval = 500): () => void {
  let running = Promise.resolve()
  const listener = (cur: Stats, prev: Stats): void => {
    if (cur.nlink === 0 && cur.ino === 0 && prev.ino !== 0) return // between unlink and rename: wait for the new file
    if (cur.mtimeMs === prev.mtimeMs && cur.ino === prev.ino && cur.size === prev.size) return
    running = running.then(reload)
  }
  watchFile(file, { interval, persistent: false }, listener)
  return () => { unwatchFile(file, listener) }
}
