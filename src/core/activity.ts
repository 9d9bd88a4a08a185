// The port through which the request path reports that a sandbox is in use (implemented by
// activity/tracker.ts). Noting is synchronous and cheap: it never slows a request.
import type { Route } from '../routes/route.ts';

export interface ActivityNotes {
  note(route: Route): void;
}
