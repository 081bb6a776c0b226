# vigil 0.1 -> 0.2: every public call is vigil_<object>_<verb>.
# Apply to your sources with: sed -i -E -f rename-0.2.sed FILE...
# (then see docs/changes.md for the three calls whose parameters changed:
#  vigil_conn_set_keepalive takes milliseconds, vigil_buf_release takes the
#  kept vigil_buf, and the file calls take their deadline from vigil_op_set_deadline)
s/\bvigil_loop_info_get\b/vigil_loop_get_info/g
s/\bvigil_loop_stats_get\b/vigil_loop_get_stats/g
s/\bvigil_supervisor_stats_get\b/vigil_supervisor_get_stats/g
s/\bvigil_loop_progress\b/vigil_loop_mark_progress/g
s/\bvigil_loop_id\b/vigil_loop_get_id/g
s/\bvigil_cancel\b/vigil_op_cancel/g
s/\bvigil_listen\b/vigil_listener_open/g
s/\bvigil_listen_adopt\b/vigil_listener_adopt/g
s/\bvigil_listen_options\b/vigil_listener_options/g
s/\bvigil_listener_port\b/vigil_listener_get_port/g
s/\bvigil_connect\b/vigil_conn_connect/g
s/\bvigil_connect_unix\b/vigil_conn_connect_unix/g
s/\bvigil_connect_name\b/vigil_conn_connect_name/g
s/\bvigil_conn_setopt\b/vigil_conn_set_option/g
s/\bvigil_conn_getopt\b/vigil_conn_get_option/g
s/\bvigil_recv_start\b/vigil_conn_recv_start/g
s/\bvigil_recv_pause\b/vigil_conn_recv_pause/g
s/\bvigil_recv_resume\b/vigil_conn_recv_resume/g
s/\bvigil_send\b/vigil_conn_send/g
s/\bvigil_send_queued\b/vigil_conn_send_queued/g
s/\bvigil_send_watermark\b/vigil_conn_set_watermark/g
s/\bvigil_shutdown\b/vigil_conn_shutdown/g
s/\bvigil_close\b/vigil_conn_close/g
s/\bvigil_abort\b/vigil_conn_abort/g
s/\bvigil_conn_keepalive\b/vigil_conn_set_keepalive/g
s/\bvigil_conn_user_timeout\b/vigil_conn_set_user_timeout/g
s/\bvigil_conn_socket\b/vigil_conn_get_socket/g
s/\bvigil_conn_data\b/vigil_conn_get_data/g
s/\bvigil_peer\b/vigil_addr/g
s/\bvigil_peer_set\b/vigil_addr_parse/g
s/\bvigil_peer_text\b/vigil_addr_format/g
s/\bvigil_udp_port\b/vigil_udp_get_port/g
s/\bvigil_resolve\b/vigil_resolve_start/g
