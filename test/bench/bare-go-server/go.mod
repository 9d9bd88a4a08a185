module sandbox-extproc/bare-go-server

go 1.24
