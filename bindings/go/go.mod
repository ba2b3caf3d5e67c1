module github.com/smartcache/smartcache-go

go 1.19
