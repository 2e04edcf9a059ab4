/**
 * The gamelist dialect's public HTTP shapes (contract: specs/gamelist.md, "Public
 * list" and "Player join"). Types only, shared by the server and by clients.
 */

/** One entry of `GET /v2/servers`. Never the password, the regToken or the address. */
export interface PublicServer {
  server_id: string;
  name: string;
  desc: string;
  map: string;
  playlist: string;
  curPlayers: number;
  maxPlayers: number;
  hasPassword: boolean;
  gameState: number;
  region?: string;
  /** When the server last registered (ISO 8601). */
  lastSeen: string;
}

/** `GET /v2/servers` */
export interface ServerListPage {
  servers: PublicServer[];
  /** How many servers match the filters, over every page. */
  total: number;
  /** Pass as `cursor` for the next page; null on the last page. */
  nextCursor: string | null;
}

/** One entry of `GET /client/servers`, the shape Northstar clients read. */
export interface NorthstarServer {
  id: string;
  name: string;
  description: string;
  map: string;
  playlist: string;
  playerCount: number;
  maxPlayers: number;
  hasPassword: boolean;
}

export const SORT_ORDERS = ['players', 'name', 'newest'] as const;
export type SortOrder = (typeof SORT_ORDERS)[number];

/** The body of `POST /v2/servers/{server_id}/join`. */
export interface JoinBody {
  sessionToken: string;
  username: string;
  clantag?: string;
  password?: string;
}

/**
 * The answer to a join. On 200 it is the GS's answer: `error` is the GS's
 * `{type: INT32, msg}`. On 400/403/404/502/503/504 `error.type` is one of
 * JoinFailure and `success` is false.
 */
export interface JoinAnswer {
  success: boolean;
  conv?: number;
  error?: { type: number | JoinFailure; msg: string };
}

export const JoinFailure = {
  BAD_REQUEST: 'BAD_REQUEST',
  NOT_FOUND: 'NOT_FOUND',
  WRONG_PASSWORD: 'WRONG_PASSWORD',
  SERVER_GONE: 'SERVER_GONE',
  TIMEOUT: 'TIMEOUT',
  SHUTTING_DOWN: 'SHUTTING_DOWN',
} as const;
export type JoinFailure = (typeof JoinFailure)[keyof typeof JoinFailure];
