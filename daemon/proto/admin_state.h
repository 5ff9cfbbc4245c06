/* ferryd: a server's administrative state, a word of the control language
 * (`set server B/S state ready|drain|maint`) kept by the registry. Types only.
 */
#ifndef FERRY_ADMIN_STATE_H
#define FERRY_ADMIN_STATE_H

/* What an operator sets (`set server ... state`): ready (serving as its
 * health says), drain (= disabled: no new connections, the active ones go
 * on) or maint (no new connections, the active ones are cut). */
enum ferry_admin_state { FERRY_ADMIN_READY, FERRY_ADMIN_DRAIN, FERRY_ADMIN_MAINT };

#endif
