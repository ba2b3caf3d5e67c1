module smartcache-interop

go 1.19

require github.com/smartcache/smartcache-go v0.0.0

replace github.com/smartcache/smartcache-go => ../../../bindings/go
