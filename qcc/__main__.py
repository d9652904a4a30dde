from qcc.cli import main

raise SystemExit(main())
