/*
 * faults.h - what the fault-injection tests share (tests/core/faults/).
 *
 * These tests link with a core built with -DWK_FAULT_INJECTION
 * (`make test-faults`).  Each runs in a forked child of a parent that never
 * started the runtime, so every pool, slab and timer heap starts empty:
 * the first allocation of a kind reaches its site for sure.
 */
#ifndef WK_TEST_FAULTS_H
#define WK_TEST_FAULTS_H

#include "runner.h"
#include "workers_fault.h"

/* A test's end state: no worker left, and the runtime still spawns,
 * sends and receives with every site disarmed. */
void f_check_runtime_recovered(void);

#endif
