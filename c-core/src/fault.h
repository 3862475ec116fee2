/*
 * fault.h - the hook each allocation site of the core calls (fault.c).
 * Nothing here is API; the control functions are in workers_fault.h.
 *
 *   if (wkint_fault(WK_FAULT_MSG))
 *           return NULL;   // as if the allocation below had failed
 *
 * Without WK_FAULT_INJECTION the hook is the constant false and the
 * compiler drops it with its branch: the default build pays nothing.
 */
#ifndef WK_FAULT_H
#define WK_FAULT_H

#include <stdbool.h>

#include "workers_fault.h"

#ifdef WK_FAULT_INJECTION
/* True if this call of the site must fail (and counts it). */
bool wkint_fault_hit(wk_fault_site site);
#define wkint_fault(site) __builtin_expect(wkint_fault_hit(site), 0)
#else
#define wkint_fault(site) ((void)(site), false)
#endif

#endif /* WK_FAULT_H */
