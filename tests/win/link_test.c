/*
 * link_test.c: the core (loop, tcp, udp, fence, rebuild, lookups, the pool)
 * built and linked for Windows. Until the IOCP backend exists a loop cannot
 * be created, and says so; the rest of the API answers bad input as on
 * Linux. Lines as iocp_probe.c prints them.
 */
#include "vigil.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "check.h"

int main(void) {
    check_prefix = "core";
    check("the library links and knows its version", !strcmp(vigil_version(), VIGIL_VERSION_STRING), "%s",
          vigil_version());
    vigil_loop *loop = NULL;
    int rc = vigil_loop_create(&loop, NULL);
    check("a loop cannot be created before the IOCP backend exists, and says so", rc == -ENOTSUP && !loop,
          "%d (%s)", rc, vigil_strerror(rc));
    vigil_loop_options bad = {.buf_count = 3};
    check("bad options are refused first", vigil_loop_create(&loop, &bad) == -EINVAL, "");
    check("calls on no loop are refused", vigil_loop_run(NULL, VIGIL_RUN_ONCE, 0) == -EINVAL &&
          vigil_loop_destroy(NULL) == -EINVAL, "");
    vigil_peer p;
    char host[64];
    uint16_t port = 0;
    int pr = vigil_peer_set(&p, "::1", 9);
    int tr = pr == 0 ? vigil_peer_text(&p, host, sizeof(host), &port) : pr;
    check("addresses round-trip", pr == 0 && tr == 0 && !strcmp(host, "::1") && port == 9, "%d %d %s", pr, tr,
          host);
    return check_done();
}
