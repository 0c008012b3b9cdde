module github.com/heraldbus/herald/_examples/blog

go 1.26.8

require github.com/heraldbus/herald v0.0.0

require (
	github.com/google/uuid v1.6.0 // indirect
	github.com/redis/rueidis v1.0.79 // indirect
	golang.org/x/sys v0.47.0 // indirect
)

replace github.com/heraldbus/herald => ../..
