from openvle.cli import main

raise SystemExit(main())
