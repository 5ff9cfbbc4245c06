/* asynccore: an intrusive doubly linked list.
 *
 * The link lives inside the element (struct ac_link), so listing costs no
 * allocation and removal is O(1) from anywhere in the list. A zeroed
 * struct ac_list is empty. A link is in at most one list at a time, and the
 * list does not record whether a link is in it: callers that may remove a
 * link twice keep that fact themselves (a `queued` flag). Not thread-safe:
 * the owner of the list serialises access (one thread, or its lock).
 */
#ifndef AC_LIST_H
#define AC_LIST_H

#include <stdbool.h>
#include <stddef.h>

struct ac_link {
    struct ac_link *next, *prev;
};

struct ac_list {
    struct ac_link *first, *last;
};

/* The element that holds `link` as its `member`. */
#define AC_LIST_ENTRY(link, type, member) ((type *)(void *)((char *)(link) - offsetof(type, member)))

static inline bool ac_list_empty(const struct ac_list *l) { return l->first == NULL; }

static inline void ac_list_push_back(struct ac_list *l, struct ac_link *n)
{
    n->next = NULL;
    n->prev = l->last;
    if (l->last)
        l->last->next = n;
    else
        l->first = n;
    l->last = n;
}

static inline void ac_list_push_front(struct ac_list *l, struct ac_link *n)
{
    n->prev = NULL;
    n->next = l->first;
    if (l->first)
        l->first->prev = n;
    else
        l->last = n;
    l->first = n;
}

/* Unlinks n, which must be in l. */
static inline void ac_list_remove(struct ac_list *l, struct ac_link *n)
{
    if (n->prev)
        n->prev->next = n->next;
    else
        l->first = n->next;
    if (n->next)
        n->next->prev = n->prev;
    else
        l->last = n->prev;
    n->next = n->prev = NULL;
}

/* Unlinks and returns the first link, or NULL. */
static inline struct ac_link *ac_list_pop_front(struct ac_list *l)
{
    struct ac_link *n = l->first;
    if (n)
        ac_list_remove(l, n);
    return n;
}

#endif
