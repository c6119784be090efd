// Addresses: the peer of a connection, the client behind trusted proxies (nginx's real_ip module with
// `real_ip_recursive on`), and IP checks shared by the config and the upstream code.
import { BlockList, isIP } from 'node:net'

/** The peer's address as logged and forwarded: IPv4-mapped IPv6 shown as plain IPv4. */
export function peerAddress (req: { socket: { remoteAddress?: string } | null }): string {
  const a = req.socket?.remoteAddress ?? ''
  return a.startsWith('::ffff:') && isIP(a.slice(7)) === 4 ? a.slice(7) : a
}

export function isIpAddress (host: string): boolean {
  return isIP(host.replace(/^\[|\]$/g, '')) !== 0
}

/** Why `entry` is not an address or a CIDR block, or null. */
export function cidrProblem (entry: string): string | null {
  const [address, bits, extra] = entry.split('/')
  const family = isIP(address)
  if (family === 0 || extra !== undefined) return 'expected an IP address or a CIDR block like 10.0.0.0/8 or fd00::/8'
  if (bits !== undefined) {
    const n = Number(bits)
    if (!/^\d{1,3}$/.test(bits) || n > (family === 4 ? 32 : 128)) return `expected a prefix length from 0 to ${family === 4 ? 32 : 128}`
  }
  return null
}

/**
 * The peers whose forwarding headers berth believes (a load balancer in front of it). Everyone else's
 * X-Forwarded-*, Forwarded and X-Real-IP are dropped.
 */
export class TrustedProxies {
  readonly #list = new BlockList()
  readonly size: number

  constructor (entries: readonly string[]) {
    this.size = entries.length
    for (const entry of entries) {
      const [address, bits] = entry.split('/')
      const type = isIP(address) === 6 ? 'ipv6' : 'ipv4'
      if (bits === undefined) this.#list.addAddress(address, type)
      else this.#list.addSubnet(address, Number(bits), type)
    }
  }

  trusts (address: string): boolean {
    const family = isIP(address)
    // Stryker disable next-line ConditionalExpression: equivalent, BlockList.check is false for what is no address
    return family !== 0 && this.#list.check(address, family === 6 ? 'ipv6' : 'ipv4')
  }

  /**
   * The client's address: the peer, or, when the peer is trusted, the nearest address in X-Forwarded-For
   * that is not itself a trusted proxy (read from the right, as each proxy appends the one it saw).
   */
  clientOf (peer: string, forwardedFor: string | undefined): string {
    // Stryker disable next-line ConditionalExpression: equivalent, with no trusted proxy trusts() is false anyway; size 0 is the short way
    if (this.size === 0 || forwardedFor === undefined || !this.trusts(peer)) return peer
    let client = peer
    const hops = forwardedFor.split(',')
    for (let i = hops.length - 1; i >= 0; i--) {
      let hop = hops[i].trim()
      // Stryker disable next-line ConditionalExpression,LogicalOperator,StringLiteral: equivalent, what the slice leaves of any other hop is no IPv4 address
      if (hop.startsWith('::ffff:') && isIP(hop.slice(7)) === 4) hop = hop.slice(7)
      if (isIP(hop) === 0) break // not an address: keep the last hop a trusted proxy vouched for
      client = hop
      if (!this.trusts(hop)) break
    }
    return client
  }
}
