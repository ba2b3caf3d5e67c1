module smartcache-examples

go 1.19

require github.com/smartcache/smartcache-go v0.0.0

// The binding is used from this repository, not fetched.
replace github.com/smartcache/smartcache-go => ../../bindings/go
