// Who a request is, as every part of berth sees it: the user, how they proved it, and what bounds them.
// A leaf: nothing here runs, and it imports nothing (src/types.ts re-exports it).

/** A registry action as the access rules name it. */
export type Action = 'pull' | 'push' | 'delete' | 'catalog'

/** A bound narrower than the access rules: an access key's scope, or what a token grants. */
export interface AccessLimit {
  /** May the holder do `action` on `repository` (null: the catalog itself)? */
  allows (action: Action, repository: string | null): boolean
}

/** The authenticated user (set by the auth plugin); null when anonymous. */
export interface BerthUser {
  name: string
  /** How the user proved it: an htpasswd password, an access key, an LDAP bind, a client certificate, a token berth issued. */
  via?: 'password' | 'key' | 'ldap' | 'certificate' | 'token'
  /** Groups from the directory (LDAP), matched against the access rules' `groups` by name. */
  groups?: readonly string[]
  /** The access key's id (access keys, and tokens issued for one). */
  key?: string
  /** Never more than this, whatever the rules allow the user (an access key's scope, a token's grants). */
  limit?: AccessLimit
}

/** One `access` entry of a registry token (distribution's token.md): `repository`/`registry`, a name, actions. */
export interface ResourceActions { type: string, name: string, actions: string[] }
