module github.com/redblack/redblack/examples/store

go 1.26.8
