//! L2: the Redis tier over hiredis (see DESIGN.md "L2").
