from cryocloud.cli.main import main

raise SystemExit(main())
